//! A queue consumer whose message bodies are their publish times
//! (microseconds since the Unix epoch, as text). It counts each delivery
//! in key `lat-BUCKET` of store `default`, where a bucket is 5% wide:
//! `BUCKET = floor(20 · ln(latency µs))`. A batch adds to each bucket once.

use nubo_sdk::{Request, Response, text};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

fn handle(req: Request) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let messages = match nubo_sdk::queue::messages(&req) {
        Ok(m) => m,
        Err(e) => return text(400, e),
    };
    let mut buckets = BTreeMap::<u32, i64>::new();
    for m in &messages {
        let sent: u64 = m.text().and_then(|s| s.trim().parse().ok()).unwrap_or(now);
        let latency = now.saturating_sub(sent).max(1);
        *buckets
            .entry((20.0 * (latency as f64).ln()).floor() as u32)
            .or_default() += 1;
    }
    let kv = match nubo_sdk::kv::Store::open("default") {
        Ok(kv) => kv,
        Err(e) => return text(500, e.to_string()),
    };
    for (bucket, n) in buckets {
        if let Err(e) = kv.increment(&format!("lat-{bucket:04}"), n) {
            return text(500, e.to_string());
        }
    }
    text(200, "ok")
}

nubo_sdk::http_handler!(handle);
