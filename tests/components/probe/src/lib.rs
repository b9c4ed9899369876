//! Test component: each path exercises one host behaviour.

use nubo_sdk::{Request, Response, text};

fn handle(req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    // Dispatch on the last segment so the same component can sit behind
    // several routes with different limits.
    let op = path.rsplit('/').next().unwrap_or("");
    match op {
        "echo" => text(
            200,
            format!(
                "{} {} route={} info={} id={} body={}",
                req.method(),
                req.uri(),
                header(&req, "nubo-matched-route"),
                header(&req, "nubo-path-info"),
                header(&req, "x-request-id"),
                String::from_utf8_lossy(req.body())
            ),
        ),
        "config" => match nubo_sdk::config::get(&query) {
            Some(v) => text(200, v),
            None => text(404, format!("no config key {query}")),
        },
        "config-all" => {
            let mut all = nubo_sdk::config::get_all();
            all.sort();
            let lines: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text(200, lines.join("\n"))
        }
        "log" => {
            println!("probe says {query}");
            eprintln!("probe warns {query}");
            text(200, "logged")
        }
        "outbound" => {
            let req = nubo_sdk::http::Request::get(query.as_str()).body(Vec::new());
            match req {
                Ok(req) => match nubo_sdk::outbound::send(req) {
                    Ok(resp) => text(
                        200,
                        format!(
                            "upstream said {}: {}",
                            resp.status(),
                            String::from_utf8_lossy(resp.body())
                        ),
                    ),
                    Err(e) => text(502, e.to_string()),
                },
                Err(e) => text(400, e.to_string()),
            }
        }
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "oom" => {
            // Grow memory in 1 MiB steps until the host says no.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => panic!("probe panicked on purpose"),
        "big" => {
            let n: usize = query.parse().unwrap_or(1 << 20);
            nubo_sdk::response(200, "application/octet-stream", vec![b'x'; n])
        }
        "sleep" => {
            let ms: u64 = query.parse().unwrap_or(100);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            text(200, format!("slept {ms}"))
        }
        _ => text(404, format!("probe has no {path}")),
    }
}

fn header(req: &Request, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

nubo_sdk::http_handler!(handle);
