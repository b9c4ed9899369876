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
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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
    /// A message a browser sent on a WebSocket.
    fn inbound(&self, message: Bytes) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
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
        Ok(b) => {
            let text = String::from_utf8_lossy(&b);
            let mut out = String::new();
            for line in text.split('\n') {
                out.push_str("data: ");
                out.push_str(line.trim_end_matches('\r'));
                out.push('\n');
            }
            out.push('\n');
            Bytes::from(out)
        }
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

/// Answers the upgrade and runs the socket on its own task.
pub(crate) fn websocket(feed: Arc<dyn Feed>, req: Request<Incoming>) -> Response<Body> {
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
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
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
        run(ws, feed).await;
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

async fn run<S>(ws: tokio_tungstenite::WebSocketStream<S>, feed: Arc<dyn Feed>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut rx) = ws.split();
    let mut topics = std::pin::pin!(merged(feed.as_ref()));
    loop {
        tokio::select! {
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    tokio::spawn(feed.inbound(Bytes::from(t.as_str().to_owned())));
                }
                Some(Ok(Message::Binary(b))) => {
                    tokio::spawn(feed.inbound(b));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings
            },
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
            }
        };
    }
}
