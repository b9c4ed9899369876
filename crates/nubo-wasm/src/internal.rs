//! Requests the node itself sends to a component: a cron run, a queue
//! delivery or a task run for a component without the matching export.
//! They reach it through its ordinary `wasi:http` handler, so any standard
//! component can be scheduled, consume a queue or run tasks.
//!
//! The authority is `{app}.{kind}.nubo.internal`, which the gateway
//! refuses from clients, and the `nubo-*` headers are set by the node
//! alone, so a component can trust them. The answer's body is read to its
//! end (where the guest finishes), up to a limit.

use crate::component::{Component, Invocation};
use crate::error::HandleError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

/// A request the node sends to a component.
pub struct InternalRequest<'a> {
    pub app: &'a str,
    /// What sends it: `cron`, `queue`, `task`.
    pub kind: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, String)],
    pub body: Vec<u8>,
    /// Largest answer body read, in bytes.
    pub max_answer: usize,
}

/// The component's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Its content type is `application/json`.
    pub json: bool,
    pub body: Bytes,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why an internal request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error("cannot build the request: {0}")]
    Request(#[source] http::Error),
    #[error(transparent)]
    Run(#[from] HandleError),
    #[error("the answer is over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("while sending its answer: {0}")]
    Body(String),
}

impl Component {
    /// `POST http://{app}.{kind}.nubo.internal{path}` as `run`, with
    /// `x-request-id` set to the run's id; the answer, whatever its status.
    pub async fn post_internal(
        &self,
        req: InternalRequest<'_>,
        run: Invocation,
    ) -> Result<Answer, InternalError> {
        let mut builder = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!(
                "http://{}.{}.nubo.internal{}",
                req.app, req.kind, req.path
            ))
            .header("x-request-id", run.id.as_str());
        for (k, v) in req.headers {
            builder = builder.header(*k, v);
        }
        // Who started the work, as the gateway would say it.
        for (k, v) in run
            .principal
            .iter()
            .flat_map(|p| crate::principal::headers(p))
        {
            builder = builder.header(k, v);
        }
        let request = builder
            .body(Full::new(Bytes::from(req.body)))
            .map_err(InternalError::Request)?;
        let resp = self.handle_as(request, run).await?;
        let status = resp.status().as_u16();
        let json = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = Limited::new(resp.into_body(), req.max_answer)
            .collect()
            .await
            .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
                Ok(_) => InternalError::TooLarge {
                    limit: req.max_answer,
                },
                Err(e) => InternalError::Body(e.to_string()),
            })?
            .to_bytes();
        Ok(Answer { status, json, body })
    }
}
