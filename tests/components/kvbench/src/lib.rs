//! `GET /?op=set|get&n=N&prefix=P`: N key-value operations on keys
//! `P0..PN` of store `default`, answered with the elapsed microseconds.

use nubo_sdk::{Request, Response, text};

fn handle(req: Request) -> Response {
    let query = req.uri().query().unwrap_or("").to_string();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
            .to_string()
    };
    let n: usize = param("n").parse().unwrap_or(100);
    let prefix = param("prefix");
    let op = param("op");
    let kv = match nubo_sdk::kv::Store::open("default") {
        Ok(kv) => kv,
        Err(e) => return text(500, format!("{e}")),
    };
    let value = vec![b'v'; 100];
    let started = std::time::Instant::now();
    for i in 0..n {
        let key = format!("{prefix}{i}");
        let r = match op.as_str() {
            "set" => kv.set(&key, &value),
            "get" => kv.get(&key).map(|_| ()),
            other => return text(400, format!("unknown op {other}")),
        };
        if let Err(e) = r {
            return text(500, format!("{e}"));
        }
    }
    text(200, started.elapsed().as_micros().to_string())
}

nubo_sdk::http_handler!(handle);
