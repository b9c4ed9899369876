//! Serving one HTTP request with a fresh instance of a component.
//!
//! Each request gets its own store and instance from the pre-instantiated
//! component, so no state leaks between requests and a trap poisons nothing.
//! The guest runs on the caller's task until it hands over the response
//! head; then the response body drives it ([`crate::driven`]) while it
//! streams the rest, still under its time and memory limits.

use crate::component::{Component, Invocation, classify};
use crate::driven::{DrivenBody, GuestFuture};
use crate::error::{HandleError, Unloaded};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

impl Component {
    /// Runs the component on `req`. Errors say why no response came; the
    /// caller maps them to 503, 504 and 500.
    pub async fn handle<B>(
        &self,
        req: hyper::Request<B>,
        request_id: &str,
    ) -> Result<hyper::Response<HyperOutgoingBody>, HandleError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let by = crate::principal::of_request(&req);
        self.handle_as(req, Invocation::request(request_id).by(by))
            .await
    }

    /// Runs the component on `req` as `run` (a task run over HTTP, for a
    /// component without the task export).
    pub async fn handle_as<B>(
        &self,
        req: hyper::Request<B>,
        run: Invocation,
    ) -> Result<hyper::Response<HyperOutgoingBody>, HandleError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Some(pre) = self.proxy.clone() else {
            return Err(HandleError::Host(
                "the component does not export wasi:http/incoming-handler".into(),
            ));
        };
        let permit = self.slot(run.task).await?;
        let limits = self.limits;
        let charge = self.charge(&run).await?;
        let (mut store, wall, metered) = self.store(&run, charge);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The gateway gives every request an absolute URI whose scheme
        // says how the client connected.
        let scheme = if req.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http
                .new_incoming_request(scheme, req)
                .map_err(|e| HandleError::Host(format!("{e:#}")))?;
            let out = http
                .new_response_outparam(tx)
                .map_err(|e| HandleError::Host(format!("{e:#}")))?;
            (req, out)
        };
        let app = self.app.clone();
        let component = self.component.clone();
        let rid: Arc<str> = run.id.as_str().into();
        let body_rid = rid.clone();
        // CPU is cut by the epoch deadline, everything else (waits on the
        // host included) by the wall-clock limit.
        let guest: GuestFuture = Box::pin(async move {
            let _permit = permit;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let result = metered.polled(wall.bound(run)).await;
            if let Err(e) = &result
                && e.downcast_ref::<Unloaded>().is_none()
            {
                tracing::warn!(
                    target: "nubo::guest",
                    app = %app, component = %component, request_id = %rid,
                    "request failed: {}", classify(e, &limits)
                );
            }
            result
        });

        // The guest runs on this task, not a spawned one: a hand-off to
        // another worker thread costs more than a small request itself.
        // Once the response head is out, the response body drives the rest.
        let mut guest = guest;
        let mut rx = rx;
        let first = tokio::select! {
            biased;
            head = &mut rx => First::Head(head),
            done = &mut guest => First::Done(done),
        };
        match first {
            First::Head(Ok(Ok(response))) => {
                Ok(response.map(|body| DrivenBody::new(body, guest, body_rid).boxed_unsync()))
            }
            First::Head(Ok(Err(code))) => Err(HandleError::GuestError(format!(
                "guest returned error {code:?}"
            ))),
            First::Head(Err(_)) => match guest.await {
                Ok(()) => Err(HandleError::GuestError(
                    "the guest returned without a response".into(),
                )),
                Err(e) => Err(classify(&e, &limits)),
            },
            First::Done(done) => match (rx.await, done) {
                // The guest failed after setting its response but before
                // the client saw any of it: answer with the failure.
                (Ok(Ok(_)), Err(e)) => Err(classify(&e, &limits)),
                (Ok(Ok(response)), Ok(())) => Ok(response),
                (Ok(Err(code)), _) => Err(HandleError::GuestError(format!(
                    "guest returned error {code:?}"
                ))),
                (Err(_), Ok(())) => Err(HandleError::GuestError(
                    "the guest returned without a response".into(),
                )),
                (Err(_), Err(e)) => Err(classify(&e, &limits)),
            },
        }
    }
}

enum First {
    Head(
        Result<
            Result<hyper::Response<HyperOutgoingBody>, ErrorCode>,
            tokio::sync::oneshot::error::RecvError,
        >,
    ),
    Done(wasmtime::Result<()>),
}
