//! A response body that keeps its guest running.
//!
//! After a guest hands over the response head it usually still has work to
//! do: write the body, finish it, return. Instead of giving the guest its own
//! task (a cross-thread hand-off per request), the body carries the guest's
//! future and polls it whenever the client asks for more bytes. If the body
//! is dropped while the guest has not finished — the client went away, or the
//! guest keeps working after `finish` — the rest runs as a task of its own,
//! still bounded by the request's deadline and limits.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Instantiation plus the guest's handler, under the request's deadline.
pub(crate) type GuestFuture = Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send>>;

pub(crate) struct DrivenBody {
    inner: HyperOutgoingBody,
    guest: Option<GuestFuture>,
}

impl DrivenBody {
    pub(crate) fn new(inner: HyperOutgoingBody, guest: GuestFuture) -> Self {
        Self {
            inner,
            guest: Some(guest),
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
        if let Some(guest) = self.guest.as_mut()
            && guest.as_mut().poll(cx).is_ready()
        {
            // Errors were logged by the guest future itself.
            self.guest = None;
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
