//! A response body that keeps its guest running.
//!
//! After a guest hands over the response head it usually still has work to
//! do: write the body, finish it, return. Instead of giving the guest its own
//! task (a cross-thread hand-off per request), the body carries the guest's
//! future and polls it whenever the client asks for more bytes. If the body
//! is dropped while the guest has not finished — the client went away, or the
//! guest keeps working after `finish` — the rest runs as a task of its own,
//! still bounded by the request's deadline and limits.
//!
//! A guest that fails after the head is out (a trap, the time or memory
//! limit) drops its body without finishing it, which wasmtime-wasi-http
//! reports as a clean end of body. Passing that on would give the client a
//! correctly terminated response that is in fact cut short. The body
//! therefore ends in an error instead, so hyper aborts the transfer (no
//! final chunk on HTTP/1.1, `RST_STREAM` on HTTP/2) and the client sees a
//! failed download, never a short complete-looking one.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Instantiation plus the guest's handler, under the request's deadline.
pub(crate) type GuestFuture = Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send>>;

pub(crate) struct DrivenBody {
    inner: HyperOutgoingBody,
    guest: Option<GuestFuture>,
    /// The request's id, for the log line of a broken-off response.
    request_id: Arc<str>,
    /// Set once the guest failed: the body reports one error, then ends.
    broken: bool,
}

impl DrivenBody {
    pub(crate) fn new(inner: HyperOutgoingBody, guest: GuestFuture, request_id: Arc<str>) -> Self {
        Self {
            inner,
            guest: Some(guest),
            request_id,
            broken: false,
        }
    }
}

impl Body for DrivenBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.broken {
            return Poll::Ready(None);
        }
        if let Some(guest) = self.guest.as_mut()
            && let Poll::Ready(done) = guest.as_mut().poll(cx)
        {
            self.guest = None;
            if done.is_err() {
                // Why it failed was logged by the guest future itself.
                self.broken = true;
                tracing::warn!(
                    target: "nubo::http",
                    request_id = %self.request_id,
                    "response broken off: the component failed after sending its headers"
                );
                return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseIncomplete)));
            }
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for DrivenBody {
    fn drop(&mut self) {
        if let Some(guest) = self.guest.take() {
            // Outside a runtime (only possible in tests) the guest is dropped,
            // which stops it; inside, it finishes as its own task.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(guest);
            }
        }
    }
}
