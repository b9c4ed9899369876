//! Outbound HTTP from a component, through `wasi:http/outgoing-handler`.
//!
//! Nubo lets a component reach only the hosts in its
//! `allowed_outbound_hosts`; any other request fails with
//! `HttpRequestDenied`, which [`SendError`] carries.

use crate::convert::{method_to_wasi, read_body, write_body};
use crate::{Request, Response};
use wasip2::http::types::{ErrorCode, Fields, OutgoingRequest, Scheme};

/// Why an outbound request failed.
#[derive(Debug)]
pub struct SendError(pub String);

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "outbound request failed: {}", self.0)
    }
}

impl std::error::Error for SendError {}

fn code(e: ErrorCode) -> SendError {
    SendError(format!("{e:?}"))
}

/// Sends `req` (its URI must be absolute) and reads the whole response.
pub fn send(req: Request) -> Result<Response, SendError> {
    let (parts, body) = req.into_parts();
    let headers = Fields::new();
    for (name, value) in &parts.headers {
        let _ = headers.append(name.as_str(), value.as_bytes());
    }
    let out = OutgoingRequest::new(headers);
    let bad = |what: &str| SendError(format!("invalid {what}"));
    out.set_method(&method_to_wasi(&parts.method))
        .map_err(|()| bad("method"))?;
    let scheme = match parts.uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") | None => Scheme::Https,
        Some(other) => Scheme::Other(other.to_string()),
    };
    out.set_scheme(Some(&scheme)).map_err(|()| bad("scheme"))?;
    let authority = parts.uri.authority().map(|a| a.as_str().to_string());
    out.set_authority(authority.as_deref())
        .map_err(|()| bad("authority"))?;
    let pq = parts.uri.path_and_query().map(|p| p.as_str().to_string());
    out.set_path_with_query(pq.as_deref())
        .map_err(|()| bad("path"))?;
    let out_body = out.body().map_err(|()| bad("body"))?;
    let future = wasip2::http::outgoing_handler::handle(out, None).map_err(code)?;
    write_body(out_body, &body);
    let incoming = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    };
    let incoming = incoming
        .map_err(|()| SendError("response already taken".into()))?
        .map_err(code)?;
    let mut builder = http::Response::builder().status(incoming.status());
    for (name, value) in incoming.headers().entries() {
        builder = builder.header(name, value);
    }
    let body = match incoming.consume() {
        Ok(b) => read_body(b).map_err(SendError)?,
        Err(()) => Vec::new(),
    };
    drop(incoming);
    builder.body(body).map_err(|e| SendError(e.to_string()))
}
