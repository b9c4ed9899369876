//! Answers `/api/hello?name=...` with the configured greeting.

use nubo_sdk::{Request, Response, text};

fn handle(req: Request) -> Response {
    let greeting = nubo_sdk::config::get("greeting").unwrap_or_else(|| "Hello".into());
    match req.uri().path() {
        "/api/hello" => {
            let name = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("name=")))
                .filter(|n| !n.is_empty())
                .unwrap_or("world");
            text(200, format!("{greeting}, {name}!\n"))
        }
        path => text(404, format!("no such endpoint: {path}\n")),
    }
}

nubo_sdk::http_handler!(handle);
