//! Requests the node itself sends to a component: cron runs, and queue
//! deliveries to a component without the queue export, reach it through
//! its ordinary `wasi:http` handler, so any standard component can be
//! scheduled or consume a queue.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use nubo_wasm::HttpComponent;

/// A 2xx answer to a request the node sent.
pub struct Answer {
    pub status: u16,
    /// Its content type is `application/json`.
    pub json: bool,
    pub body: Bytes,
}

/// `POST http://{app}.{kind}.nubo.internal{path}` with `headers` and `body`;
/// the answer if it is 2xx, else why not. The answer's body is read to its
/// end, which is where the guest finishes.
pub async fn post(
    c: &HttpComponent,
    app: &str,
    kind: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    request_id: &str,
) -> Result<Answer, String> {
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://{app}.{kind}.nubo.internal{path}"))
        .header("x-request-id", request_id);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("bad request: {e}"))?;
    let resp = c.handle(req, request_id).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = resp.into_body().collect().await.map(|b| b.to_bytes());
    if status.is_success() {
        Ok(Answer {
            status: status.as_u16(),
            json,
            body: body.map_err(|e| format!("reading the answer: {e}"))?,
        })
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}
