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
