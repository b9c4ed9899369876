//! "Hello, world!" as a plain `wasi:http/proxy` component.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

wasip2::http::proxy::export!(Hello);

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let headers = Fields::new();
        let _ = headers.append("content-type", b"text/plain");
        let resp = OutgoingResponse::new(headers);
        let Ok(body) = resp.body() else { return };
        ResponseOutparam::set(out, Ok(resp));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(b"Hello, world!\n");
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
