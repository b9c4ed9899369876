//! Routes that stay open: Server-Sent Events and WebSockets carry a
//! topic's messages to the browser as they are published; on a WebSocket,
//! what the browser sends goes to a component.
//!
//! The gateway only speaks the protocols (tungstenite frames the
//! WebSocket); which topics and which component come from the node
//! through [`Feed`]. Each connection is one task holding one broadcast
//! receiver per topic, a few kilobytes: ten thousand browsers are ten
//! thousand small tasks, not threads.

use crate::body::{Body, BoxError};
use crate::wire::sse_event;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// What an open route is connected to.
pub trait Feed: Send + Sync {
    /// One receiver per topic of the route.
    fn subscribe(&self) -> Vec<broadcast::Receiver<Bytes>>;
    /// Browser origins (`https://host[:port]`, or `*`) that may open a
    /// WebSocket besides pages of the host the request is addressed to.
    fn origins(&self) -> &[String] {
        &[]
    }
    /// A message a browser sent on a WebSocket.
    fn inbound(&self, message: Bytes) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// Makes the feed of each SSE or WebSocket route. The pub/sub capability
/// puts one in the node's services; the node finds it there for an app's
/// topic routes.
pub trait Feeds: Send + Sync {
    /// The feed of `topics` of `app`; a WebSocket's messages go to
    /// `inbound` (a component and the path they are `POST`ed to), and
    /// `origins` may open it besides the request's own host.
    fn feed(
        &self,
        app: &str,
        topics: &[String],
        inbound: Option<(nubo_wasm::HttpComponent, String)>,
        origins: &[String],
    ) -> Arc<dyn Feed>;
}

/// Every topic's messages as one stream; a lag becomes `None`-with-count.
fn merged(
    feed: &dyn Feed,
) -> impl futures_util::Stream<Item = Result<Bytes, u64>> + Send + 'static + use<> {
    futures_util::stream::select_all(feed.subscribe().into_iter().map(|rx| {
        BroadcastStream::new(rx).map(|item| match item {
            Ok(b) => Ok(b),
            Err(BroadcastStreamRecvError::Lagged(n)) => Err(n),
        })
    }))
}

/// `text/event-stream`: one `data:` event per message, a comment every
/// 15 s so that proxies keep the connection.
pub(crate) fn sse(feed: &dyn Feed) -> Response<Body> {
    let events = merged(feed).map(|m| match m {
        Ok(b) => sse_event(&b),
        Err(n) => Bytes::from(format!(
            ": skipped {n} messages (this client fell behind)\n\n"
        )),
    });
    let keepalive = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(15),
        Duration::from_secs(15),
    ))
    .map(|_| Bytes::from_static(b": keep-alive\n\n"));
    let stream =
        futures_util::stream::select(events, keepalive).map(|b| Ok::<_, BoxError>(Frame::data(b)));
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Whether a browser page at `origin` may open this WebSocket: always a
/// page of the host the request is addressed to, plus the route's
/// `origins`. A client that sends no `Origin` is no browser, and no page
/// can borrow a visitor's cookies through it, so it is let in.
fn origin_allowed(origin: Option<&str>, authority: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.to_ascii_lowercase();
    if allowed.iter().any(|a| a == "*" || *a == origin) {
        return true;
    }
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match (host, authority) {
        (Some(h), Some(a)) => h.eq_ignore_ascii_case(a) || same_host_default_port(&origin, a),
        _ => false,
    }
}

/// `https://example.com` against `example.com:443` and the like.
fn same_host_default_port(origin: &str, authority: &str) -> bool {
    let (scheme_port, host) = match origin.split_once("://") {
        Some(("https", h)) => ("443", h),
        Some(("http", h)) => ("80", h),
        _ => return false,
    };
    authority
        .rsplit_once(':')
        .is_some_and(|(h, p)| p == scheme_port && h.eq_ignore_ascii_case(host))
}

/// Answers the upgrade and runs the socket on its own task.
pub(crate) fn websocket(
    feed: Arc<dyn Feed>,
    req: crate::listener::TimedRequest,
    open: Arc<AtomicUsize>,
) -> Response<Body> {
    let h = req.headers();
    let is_upgrade = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = h.get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = h
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let (Some(key), true, true) = (key, is_upgrade, version_ok) else {
        return crate::server::text(
            StatusCode::UPGRADE_REQUIRED,
            "this route is a WebSocket: connect with a WebSocket client (version 13)\n".into(),
        );
    };
    let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, crate::edge::authority(&req), feed.origins()) {
        tracing::warn!(
            target: "nubo::http",
            origin = origin.unwrap_or_default(),
            "websocket refused: its page's origin is not allowed"
        );
        return crate::server::text(
            StatusCode::FORBIDDEN,
            "this WebSocket does not accept pages from your origin (see `origins` on [[websocket]])\n".into(),
        );
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    // The socket counts under the listener's max_connections while it lives.
    let slot = req.extensions().get::<crate::listener::ConnSlot>().cloned();
    let usage = req.extensions().get::<crate::usage::SocketUsage>().cloned();
    tokio::spawn(async move {
        let _slot = slot;
        let _open = Open::new(open);
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("websocket upgrade failed: {e}");
                return;
            }
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(socket_config()),
        )
        .await;
        run(ws, feed, crate::usage::SocketTally::new(usage)).await;
    });
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

/// Small buffers: tungstenite's defaults (128 KiB each way) would make ten
/// thousand idle sockets cost gigabytes. Writes go out as they are made;
/// a browser that stops reading is cut off at 1 MiB of backlog; messages
/// from browsers are capped like published ones.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

/// Messages of one WebSocket waiting for the component, beyond the one it
/// is handling. A client that sends faster is closed with code 1008.
pub const INBOUND_BACKLOG: usize = 32;

/// Hands a connection's messages to the component one at a time, in the
/// order they came: one browser occupies at most one instance.
fn inbound_worker(feed: Arc<dyn Feed>) -> tokio::sync::mpsc::Sender<Bytes> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(INBOUND_BACKLOG);
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            feed.inbound(message).await;
        }
    });
    tx
}

/// How often an open WebSocket's usage is recorded.
const USAGE_EVERY: Duration = Duration::from_secs(60);

async fn run<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    feed: Arc<dyn Feed>,
    mut usage: crate::usage::SocketTally,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::sync::mpsc::error::TrySendError;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let (mut tx, mut rx) = ws.split();
    let mut topics = std::pin::pin!(merged(feed.as_ref()));
    let inbound = inbound_worker(feed.clone());
    let mut record =
        tokio::time::interval_at(tokio::time::Instant::now() + USAGE_EVERY, USAGE_EVERY);
    loop {
        tokio::select! {
            _ = record.tick() => usage.flush(),
            incoming = rx.next() => {
                let message = match incoming {
                    Some(Ok(Message::Text(t))) => Bytes::from(t.as_str().to_owned()),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings
                };
                usage.inbound();
                match inbound.try_send(message) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        tracing::warn!(
                            target: "nubo::http",
                            "websocket closed: its client sent more than {INBOUND_BACKLOG} messages ahead of the component"
                        );
                        let close = CloseFrame {
                            code: CloseCode::Policy,
                            reason: "too many messages: wait for answers before sending more".into(),
                        };
                        let _ = tx.send(Message::Close(Some(close))).await;
                        break;
                    }
                    Err(TrySendError::Closed(_)) => break,
                }
            }
            out = topics.next() => {
                let msg = match out {
                    Some(Ok(b)) => match String::from_utf8(b.to_vec()) {
                        Ok(s) => Message::text(s),
                        Err(_) => Message::binary(b),
                    },
                    Some(Err(n)) => Message::text(format!("{{\"skipped\":{n}}}")),
                    None => break,
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
                usage.outbound();
            }
        };
    }
}

/// One open WebSocket in the gateway's count, for as long as it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_message_can_end_an_event_or_add_a_field() {
        for (message, want) in [
            ("hi", "data: hi\n\n"),
            ("a\nb", "data: a\ndata: b\n\n"),
            ("a\r\nb", "data: a\ndata: b\n\n"),
            (
                "a\revent: admin\rid: 9",
                "data: a\ndata: event: admin\ndata: id: 9\n\n",
            ),
            ("a\n\nretry: 1", "data: a\ndata: \ndata: retry: 1\n\n"),
        ] {
            assert_eq!(
                sse_event(message.as_bytes()),
                Bytes::from(want),
                "{message:?}"
            );
        }
    }

    #[test]
    fn origins_a_websocket_accepts() {
        let none: &[String] = &[];
        let listed = ["https://app.example.com".to_string()];
        // No Origin: not a browser.
        assert!(origin_allowed(None, Some("a.test"), none));
        // The page's own host, with or without the default port.
        assert!(origin_allowed(
            Some("http://127.0.0.1:3000"),
            Some("127.0.0.1:3000"),
            none
        ));
        assert!(origin_allowed(
            Some("https://a.test"),
            Some("a.test:443"),
            none
        ));
        assert!(origin_allowed(Some("HTTPS://A.test"), Some("a.test"), none));
        // Another site's page.
        assert!(!origin_allowed(
            Some("https://evil.test"),
            Some("a.test"),
            none
        ));
        assert!(!origin_allowed(
            Some("http://a.test:8080"),
            Some("a.test:3000"),
            none
        ));
        assert!(!origin_allowed(Some("null"), Some("a.test"), none));
        // Listed, or any.
        assert!(origin_allowed(
            Some("https://app.example.com"),
            Some("api.test"),
            &listed
        ));
        assert!(origin_allowed(
            Some("https://x.test"),
            Some("api.test"),
            &["*".into()]
        ));
    }
}
