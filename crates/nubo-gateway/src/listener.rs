//! Accepting connections without letting a client hold them.
//!
//! hyper speaks the protocols; what it does not bound, this module does,
//! for the app listener and the control API alike:
//!
//! - **open connections** per listener are capped: at the cap the listener
//!   stops accepting and new clients wait in the kernel's backlog;
//! - **a connection that sends nothing** (or half an HTTP/2 preface, or half
//!   a request head) is closed once [`ConnLimits::header_timeout`] passes
//!   without a complete request;
//! - **an idle connection** (HTTP/1.1 keep-alive or HTTP/2 with no open
//!   stream) is closed after [`ConnLimits::idle_timeout`]; a response that
//!   is still streaming (SSE, a download) is not idle;
//! - **a request body** must keep arriving: it fails once it is slower than
//!   [`ConnLimits::body_timeout`] plus one second per [`MIN_BODY_RATE`]
//!   bytes received, as Apache's `mod_reqtimeout` does, so a trickled
//!   upload cannot keep a handler (or a queue route) waiting forever.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// Bytes per second a request body must keep up, past its first
/// [`ConnLimits::body_timeout`].
pub const MIN_BODY_RATE: u64 = 1024;

/// How long a server waits for its connections after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long a client may hold a connection without using it.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections at once on one listener.
    pub max_connections: usize,
    /// From accepting a connection (or finishing its last request) to a
    /// complete request head.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// The grace a request body gets before [`MIN_BODY_RATE`] applies.
    pub body_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: 20_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// A request whose body is bounded by [`ConnLimits::body_timeout`].
pub type TimedRequest = http::Request<TimedBody>;

/// Serves `service` on `listener` until `shutdown` resolves, then stops
/// accepting and gives open connections [`SHUTDOWN_GRACE`] to finish.
///
/// With `tls`, each connection is a TLS one, its handshake within
/// [`ConnLimits::header_timeout`], and its requests carry [`OverTls`].
pub async fn serve_connections<S, F, B>(
    listener: TcpListener,
    limits: ConnLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Fn(TimedRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopping) = watch::channel(false);
    let open = tokio_util::task::TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        // At the cap, wait for a connection to close before accepting.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            peer: Peer(peer),
            activity: Arc::new(Activity::new()),
            limits,
            slot: ConnSlot {
                _permit: Arc::new(permit),
            },
            tls: tls.is_some(),
        };
        let service = service.clone();
        let builder = builder.clone();
        let stopping = stopping.clone();
        let tls = tls.clone();
        open.spawn(async move {
            let Some(acceptor) = tls else {
                conn.run(&builder, TokioIo::new(stream), service, stopping)
                    .await;
                return;
            };
            match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    conn.run(&builder, TokioIo::new(stream), service, stopping)
                        .await;
                }
                Ok(Err(e)) => tracing::debug!(peer = %peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(peer = %peer, "TLS handshake took too long"),
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    open.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, open.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}

/// What one connection is doing, for its watchdog.
struct Activity {
    /// Requests whose response has not been sent to its end.
    in_flight: AtomicUsize,
    /// Requests begun on this connection.
    started: AtomicU64,
    /// When the connection last became idle, in ms after `epoch`.
    idle_since_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When an idle connection is to be closed; `None` while busy.
    fn idle_deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        // Before its first request a connection must send one promptly.
        let wait = if self.started.load(Ordering::Relaxed) == 0 {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
        Some(since + wait)
    }
}

/// Held from a request's start to the end of its response body.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = a.epoch.elapsed().as_millis() as u64;
        a.idle_since_ms.store(ms, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The address a request's connection came from, in its extensions.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

/// In the extensions of a request that came over TLS.
#[derive(Clone, Copy, Debug)]
pub struct OverTls;

struct Connection {
    peer: Peer,
    activity: Arc<Activity>,
    limits: ConnLimits,
    /// Its place under `max_connections`, held as long as the connection
    /// or a socket upgraded from it lives.
    slot: ConnSlot,
    /// Whether it came over TLS.
    tls: bool,
}

/// A connection's place under [`ConnLimits::max_connections`]. An upgrade
/// request carries a clone in its extensions, so that a WebSocket keeps
/// counting after hyper hands its socket over.
#[derive(Clone)]
pub(crate) struct ConnSlot {
    _permit: Arc<tokio::sync::OwnedSemaphorePermit>,
}

impl Connection {
    async fn run<S, F, B, I>(
        self,
        builder: &auto::Builder<TokioExecutor>,
        io: TokioIo<I>,
        service: S,
        mut stopping: watch::Receiver<bool>,
    ) where
        S: Fn(TimedRequest) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = http::Response<B>> + Send + 'static,
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = self.activity.clone();
        let tls = self.tls;
        let limits = self.limits;
        let slot = self.slot.clone();
        let peer = self.peer;
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let guard = activity.begin();
            let mut req = req.map(|b| TimedBody::new(b, limits.body_timeout));
            req.extensions_mut().insert(peer);
            if tls {
                req.extensions_mut().insert(OverTls);
            }
            if req.headers().contains_key(http::header::UPGRADE) {
                req.extensions_mut().insert(slot.clone());
            }
            let fut = service(req);
            async move {
                let resp = fut.await;
                Ok::<_, std::convert::Infallible>(resp.map(|body| Tracked {
                    inner: body,
                    _guard: guard,
                }))
            }
        });
        let conn = builder.serve_connection_with_upgrades(io, svc);
        tokio::pin!(conn);
        loop {
            let check = match self.activity.idle_deadline(&self.limits) {
                Some(at) => at,
                // Busy: look again after a while.
                None => Instant::now() + self.limits.idle_timeout,
            };
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!("connection ended: {e}");
                    }
                    return;
                }
                _ = stopping.wait_for(|s| *s) => break,
                () = tokio::time::sleep_until(check) => {
                    if self.activity.idle_deadline(&self.limits).is_some_and(|at| at <= Instant::now()) {
                        tracing::debug!("closing an idle connection");
                        break;
                    }
                }
            }
        }
        // Node shutdown or idleness: let what is in flight finish, then
        // close (HTTP/2 sends GOAWAY; an idle HTTP/1.1 connection closes).
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
    }
}

/// A response body that marks its request done when it ends or is dropped.
struct Tracked<B> {
    inner: B,
    _guard: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body arrived too slowly (under {MIN_BODY_RATE} bytes/s after {0:?})")]
    TooSlow(Duration),
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

impl From<BodyError> for wasmtime_wasi_http::Error {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooSlow(_) => Self::ConnectionReadTimeout,
            BodyError::Hyper(e) => Self::Hyper(e),
        }
    }
}

/// A request body with a deadline that grows with what has arrived.
pub struct TimedBody {
    inner: Incoming,
    grace: Duration,
    received: u64,
    started: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, grace: Duration) -> Self {
        Self {
            inner,
            grace,
            received: 0,
            started: Instant::now(),
            timer: None,
        }
    }

    fn deadline(&self) -> Instant {
        self.started + self.grace + Duration::from_millis(self.received * 1000 / MIN_BODY_RATE)
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(Ok(f)) = &frame
                    && let Some(d) = f.data_ref()
                {
                    this.received += d.len() as u64;
                }
                Poll::Ready(frame.map(|f| f.map_err(BodyError::from)))
            }
            Poll::Pending => {
                let deadline = this.deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::TooSlow(this.grace)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
