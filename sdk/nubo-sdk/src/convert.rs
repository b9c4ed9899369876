//! Between `wasi:http` resources and the `http` crate's types.

use crate::{IntoResponse, Request, Response};
use std::io::{Read, Write};
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
    ResponseOutparam, Scheme,
};

pub fn serve<R: IntoResponse>(
    request: IncomingRequest,
    out: ResponseOutparam,
    handler: impl FnOnce(Request) -> R,
) {
    let request = match incoming(request) {
        Ok(r) => r,
        Err(e) => {
            ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(e))));
            return;
        }
    };
    let response = handler(request).into_response();
    send(out, response);
}

fn incoming(request: IncomingRequest) -> Result<Request, String> {
    let method = method_from_wasi(&request.method());
    let scheme = match request.scheme() {
        Some(Scheme::Https) => "https".to_string(),
        Some(Scheme::Other(s)) => s,
        _ => "http".to_string(),
    };
    let pq = request.path_with_query().unwrap_or_else(|| "/".into());
    let uri = match request.authority() {
        Some(a) => format!("{scheme}://{a}{pq}"),
        None => pq,
    };
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in request.headers().entries() {
        builder = builder.header(name, value);
    }
    let body = match request.consume() {
        Ok(body) => read_body(body)?,
        Err(()) => Vec::new(),
    };
    builder.body(body).map_err(|e| e.to_string())
}

pub(crate) fn read_body(body: IncomingBody) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    {
        let mut stream = body
            .stream()
            .map_err(|()| "request body already taken".to_string())?;
        stream.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    }
    let _trailers = IncomingBody::finish(body);
    Ok(buf)
}

fn send(out: ResponseOutparam, response: Response) {
    let (parts, body) = response.into_parts();
    if let Some(out_body) = start_response(out, &parts) {
        write_body(out_body, &body);
    }
}

/// Sends the status and headers; the body to write, unless that failed.
pub(crate) fn start_response(
    out: ResponseOutparam,
    parts: &http::response::Parts,
) -> Option<OutgoingBody> {
    let headers = Fields::new();
    for (name, value) in &parts.headers {
        // Forbidden headers (connection, host, ...) are the host's business.
        let _ = headers.append(name.as_str(), value.as_bytes());
    }
    let resp = OutgoingResponse::new(headers);
    let _ = resp.set_status_code(parts.status.as_u16());
    let Ok(out_body) = resp.body() else {
        ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some("no body".into()))));
        return None;
    };
    ResponseOutparam::set(out, Ok(resp));
    Some(out_body)
}

pub(crate) fn write_body(out_body: OutgoingBody, bytes: &[u8]) {
    if let Ok(mut stream) = out_body.write()
        && stream
            .write_all(bytes)
            .and_then(|()| Write::flush(&mut stream))
            .is_err()
    {
        // The client went away; nothing useful left to do.
        return;
    }
    let _ = OutgoingBody::finish(out_body, None);
}

pub(crate) fn method_from_wasi(m: &Method) -> http::Method {
    match m {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
        Method::Other(s) => http::Method::from_bytes(s.as_bytes()).unwrap_or(http::Method::GET),
    }
}

pub(crate) fn method_to_wasi(m: &http::Method) -> Method {
    match *m {
        http::Method::GET => Method::Get,
        http::Method::HEAD => Method::Head,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::DELETE => Method::Delete,
        http::Method::CONNECT => Method::Connect,
        http::Method::OPTIONS => Method::Options,
        http::Method::TRACE => Method::Trace,
        http::Method::PATCH => Method::Patch,
        ref other => Method::Other(other.to_string()),
    }
}
