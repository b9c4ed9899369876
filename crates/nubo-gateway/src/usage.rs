//! What the gateway counts of each request an app answers, for the node's
//! usage ([`nubo_wasm::usage`]): one request, by the class of its status,
//! and the bytes of its answer's body, under the app, the route, the
//! component and the signed-in user. The body's bytes are known at once
//! when it has a fixed length; a streamed body is counted as it is sent
//! and recorded when it ends or the client goes away.

use crate::{Body, BoxError};
use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use nubo_wasm::{Dims, Meter, Metric};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub const REQUESTS_2XX: Metric = Metric::sum("requests_2xx");
pub const REQUESTS_3XX: Metric = Metric::sum("requests_3xx");
pub const REQUESTS_4XX: Metric = Metric::sum("requests_4xx");
pub const REQUESTS_5XX: Metric = Metric::sum("requests_5xx");
/// Bytes of answer bodies sent to clients.
pub const BYTES_OUT: Metric = Metric::sum("bytes_out");

/// Counts `response` to a request of `dims`; gives it back, its body
/// counted as it goes out if its length is not known.
pub(crate) fn count(meter: &Arc<Meter>, dims: Dims, response: Response<Body>) -> Response<Body> {
    let class = match response.status().as_u16() {
        0..=299 => REQUESTS_2XX,
        300..=399 => REQUESTS_3XX,
        400..=499 => REQUESTS_4XX,
        _ => REQUESTS_5XX,
    };
    match hyper::body::Body::size_hint(response.body()).exact() {
        Some(n) => {
            meter.record(&dims, &[(class, 1), (BYTES_OUT, n)]);
            response
        }
        None => {
            meter.record(&dims, &[(class, 1)]);
            response.map(|body| {
                Counted {
                    body,
                    sent: 0,
                    meter: meter.clone(),
                    dims,
                }
                .boxed_unsync()
            })
        }
    }
}

/// A streamed body whose bytes are recorded when it is dropped.
struct Counted {
    body: Body,
    sent: u64,
    meter: Arc<Meter>,
    dims: Dims,
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.sent += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.meter.record(&self.dims, &[(BYTES_OUT, self.sent)]);
    }
}

/// Messages a WebSocket's client sent and was sent, and how long it was
/// open, in milliseconds.
pub const WS_MESSAGES_IN: Metric = Metric::sum("ws_messages_in");
pub const WS_MESSAGES_OUT: Metric = Metric::sum("ws_messages_out");
pub const WS_CONNECTION_MS: Metric = Metric::sum("ws_connection_ms");

/// Where a WebSocket's usage is counted: what the gateway attaches to
/// the request that opens it.
#[derive(Clone)]
pub(crate) struct SocketUsage {
    pub(crate) meter: Arc<Meter>,
    pub(crate) dims: Dims,
}

/// One open WebSocket's usage not yet recorded; recorded every minute
/// while it is open ([`Self::flush`]) and when it closes.
pub(crate) struct SocketTally {
    usage: Option<SocketUsage>,
    messages_in: u64,
    messages_out: u64,
    since: std::time::Instant,
}

impl SocketTally {
    pub(crate) fn new(usage: Option<SocketUsage>) -> Self {
        Self {
            usage,
            messages_in: 0,
            messages_out: 0,
            since: std::time::Instant::now(),
        }
    }

    pub(crate) fn inbound(&mut self) {
        self.messages_in += 1;
    }

    pub(crate) fn outbound(&mut self) {
        self.messages_out += 1;
    }

    /// Records what was counted since the last flush.
    pub(crate) fn flush(&mut self) {
        let Some(u) = &self.usage else {
            return;
        };
        let now = std::time::Instant::now();
        let ms = now.duration_since(self.since).as_millis() as u64;
        u.meter.record(
            &u.dims,
            &[
                (WS_MESSAGES_IN, self.messages_in),
                (WS_MESSAGES_OUT, self.messages_out),
                (WS_CONNECTION_MS, ms),
            ],
        );
        (self.messages_in, self.messages_out, self.since) = (0, 0, now);
    }
}

impl Drop for SocketTally {
    fn drop(&mut self) {
        self.flush();
    }
}
