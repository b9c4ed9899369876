//! Requests the node itself sends to a component: cron runs and queue
//! deliveries reach a component through its ordinary `wasi:http` handler,
//! so any standard component can be scheduled or consume a queue.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use nubo_wasm::HttpComponent;

/// `POST http://{app}.{kind}.nubo.internal{path}` with `headers` and `body`;
/// `Ok` for a 2xx answer, else why not. The answer's body is read to its
/// end, which is where the guest finishes.
pub async fn post(
    c: &HttpComponent,
    app: &str,
    kind: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    request_id: &str,
) -> Result<u16, String> {
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
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}
