//! Handlers whose bodies are streams: for uploads and downloads too big to
//! hold in memory, e.g. copying a request into a blob or a blob into the
//! response.
//!
//! ```ignore
//! use nubo_sdk::stream::{Body, Request, Response};
//!
//! fn handle(mut req: Request) -> Response {
//!     let files = nubo_sdk::blob::Container::open("files").unwrap();
//!     let mut w = files.writer("upload.bin", "application/octet-stream").unwrap();
//!     std::io::copy(req.body_mut(), &mut w).unwrap();
//!     w.finish().unwrap();
//!     let r = files.reader("upload.bin").unwrap().unwrap();
//!     Response::new(Body::reader(r))
//! }
//!
//! nubo_sdk::stream_handler!(handle);
//! ```

use crate::convert::method_from_wasi;
use std::io::{Read, Write};
use wasip2::http::types::{
    ErrorCode, IncomingBody, IncomingRequest, OutgoingBody, ResponseOutparam,
};
use wasip2::io::streams::InputStream;

/// A request whose body is read as it arrives.
pub type Request = http::Request<BodyReader>;
/// A response whose body is written after the handler returns.
pub type Response = http::Response<Body>;

/// What a streaming response sends.
pub enum Body {
    Bytes(Vec<u8>),
    Reader(Box<dyn Read>),
}

impl Body {
    pub fn reader(r: impl Read + 'static) -> Body {
        Body::Reader(Box::new(r))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::Bytes(v)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::Bytes(s.into_bytes())
    }
}

/// A request body as `std::io::Read`.
pub struct BodyReader {
    // The stream is a child of the body: declared first, dropped first.
    stream: Option<InputStream>,
    _body: Option<IncomingBody>,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.stream.as_mut() {
            Some(s) => Read::read(s, buf),
            None => Ok(0),
        }
    }
}

/// A response with a status and a body; an invalid status becomes 500.
pub fn response(status: u16, content_type: &str, body: impl Into<Body>) -> Response {
    let mut r = http::Response::new(body.into());
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

#[doc(hidden)]
pub fn serve(
    request: IncomingRequest,
    out: ResponseOutparam,
    handler: impl FnOnce(Request) -> Response,
) {
    let pq = request.path_with_query().unwrap_or_else(|| "/".into());
    let mut builder = http::Request::builder()
        .method(method_from_wasi(&request.method()))
        .uri(pq);
    for (name, value) in request.headers().entries() {
        builder = builder.header(name, value);
    }
    let (stream, body) = match request.consume() {
        Ok(body) => (body.stream().ok(), Some(body)),
        Err(()) => (None, None),
    };
    let reader = BodyReader {
        stream,
        _body: body,
    };
    let request = match builder.body(reader) {
        Ok(r) => r,
        Err(e) => {
            ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(e.to_string()))));
            return;
        }
    };
    let (parts, body) = handler(request).into_parts();
    let Some(out_body) = crate::convert::start_response(out, &parts) else {
        return;
    };
    match body {
        Body::Bytes(b) => crate::convert::write_body(out_body, &b),
        Body::Reader(mut r) => {
            if let Ok(mut stream) = out_body.write() {
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                // The client went away.
                                return;
                            }
                        }
                        Err(e) => {
                            eprintln!("response body: {e}");
                            return;
                        }
                    }
                }
                let _ = Write::flush(&mut stream);
            }
            let _ = OutgoingBody::finish(out_body, None);
        }
    }
}

/// Exports `handler`, a `fn(stream::Request) -> stream::Response`, as the
/// component's `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! stream_handler {
    ($handler:path) => {
        struct __NuboStreamHandler;
        impl $crate::__private::Guest for __NuboStreamHandler {
            fn handle(
                request: $crate::__private::IncomingRequest,
                out: $crate::__private::ResponseOutparam,
            ) {
                $crate::stream::serve(request, out, $handler)
            }
        }
        $crate::__private::wasip2::http::proxy::export!(
            __NuboStreamHandler with_types_in $crate::__private::wasip2
        );
    };
}
