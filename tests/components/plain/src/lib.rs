//! A `wasi:http/proxy` component written against the raw WASI 0.2 API, as
//! any other toolchain would produce it. Echoes method, path and body.

use std::io::{Read, Write};
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Plain;

wasip2::http::proxy::export!(Plain);

impl wasip2::exports::http::incoming_handler::Guest for Plain {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = match request.method() {
            Method::Get => "GET".to_string(),
            Method::Post => "POST".to_string(),
            Method::Other(s) => s,
            m => format!("{m:?}").to_uppercase(),
        };
        let path = request.path_with_query().unwrap_or_default();
        let mut body = Vec::new();
        if let Ok(incoming) = request.consume() {
            if let Ok(mut stream) = incoming.stream() {
                let _ = stream.read_to_end(&mut body);
            }
            let _ = IncomingBody::finish(incoming);
        }
        let text = format!(
            "plain: {method} {path} body={}\n",
            String::from_utf8_lossy(&body)
        );
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .unwrap_or_else(|_| Fields::new());
        let resp = OutgoingResponse::new(headers);
        let _ = resp.set_status_code(200);
        let Ok(body) = resp.body() else { return };
        ResponseOutparam::set(out, Ok(resp));
        if let Ok(mut stream) = body.write() {
            let _ = stream.write_all(text.as_bytes());
            let _ = stream.blocking_flush();
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
