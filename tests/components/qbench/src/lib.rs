//! A queue consumer whose message body is the publish time (microseconds
//! since the Unix epoch, as text). It counts the delivery in key
//! `lat-BUCKET` of store `default`, where a bucket is 5% wide:
//! `BUCKET = floor(20 · ln(latency µs))`.

use nubo_sdk::{Request, Response, text};
use std::time::{SystemTime, UNIX_EPOCH};

fn handle(req: Request) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let sent: u64 = std::str::from_utf8(req.body())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(now);
    let latency = now.saturating_sub(sent).max(1);
    let bucket = (20.0 * (latency as f64).ln()).floor() as u32;
    let kv = match nubo_sdk::kv::Store::open("default") {
        Ok(kv) => kv,
        Err(e) => return text(500, e.to_string()),
    };
    match kv.increment(&format!("lat-{bucket:04}"), 1) {
        Ok(_) => text(200, "ok"),
        Err(e) => text(500, e.to_string()),
    }
}

nubo_sdk::http_handler!(handle);
